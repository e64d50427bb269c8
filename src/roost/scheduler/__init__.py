"""Which models are loaded, for how long, and the runner processes that hold them."""
