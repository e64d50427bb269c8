"""Engines that run a model: llama.cpp in a runner process."""
