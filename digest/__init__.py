"""digest: research-paper email digests matched to saved topics."""

__version__ = "0.1.0"
