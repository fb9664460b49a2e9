"""The composition root: `Components(settings)` builds every part of Sluice."""
