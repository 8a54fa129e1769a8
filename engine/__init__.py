"""Darkroom's headless engine: requests in, typed events out. Never imports Qt or `gui`.

Importing this package is cheap: torch and diffusers are imported only by the modules that run models
(`engine.pipeline`, `engine.loader`) and only when a worker first needs them.
"""

__version__ = "0.1.0"
