"""arcsub: a Kaggle submission kit for the ARC Prize."""

__version__ = "0.1.0"
