"""statusmail: an email-native micro-blogging gateway."""

__version__ = "0.1.0"
