"""Model backends behind one Protocol (see `base.py`); `registry.resolve` maps spec strings."""
