"""The anti-virus benchmark's parts: the message mix and its load, the two stacks, the checks.

``mail`` builds the mix and sends it; ``edgeward_stack`` and ``amavis_stack`` start the stacks
under test; ``measure`` samples CPU and memory; ``verify`` proves both stacks scanned.
"""
