"""sjdl: foggy vehicle re-identification with semi-supervised joint defogging learning."""

__version__ = "0.1.0"
