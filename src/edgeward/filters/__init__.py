"""Agents, the pipeline that runs them, and the transforms applied after acceptance."""
