"""What a person starts: train, resume, the learning-rate finder, the from-scratch baseline."""
