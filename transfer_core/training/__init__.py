"""The training loop and what it is made of: callbacks, feature cache, optimizer, step memory, torchrun,
progress clock, failure explanations."""
