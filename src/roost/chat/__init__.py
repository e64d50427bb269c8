"""Prompt templates: chat messages to the text a model was trained on."""
