"""Transport rules: the condition evaluator, the groups it asks, and the message edits.

``conditions`` decides which ``[[rules]]`` match a message (``MessageFacts``), ``groups`` answers
"is this address in that group", ``headers`` and ``disclaimer`` make the changes the rules
transform (``filters.transforms.rules``) applies after acceptance. The deciding actions are the
``transport-rules`` agent's (``filters.agents.transport_rules``).
"""
