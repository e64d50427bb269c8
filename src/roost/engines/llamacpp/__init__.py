"""llama.cpp through llama-cpp-python's low-level bindings; imported only by runner processes."""
