"""The write stage: rendered steps as TensorBoard events, on or off the training thread,
and the one rule for failures (`on_error`). Imports no framework.
"""
