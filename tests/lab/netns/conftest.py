"""The namespace lab tests share one lab per session (see fixture.py)."""

from .fixture import netns_lab

__all__ = ["netns_lab"]
