"""The read-only web on the intranet (SPEC §8): Starlette pages, Atom, sign-in, one-click unsubscribe."""
