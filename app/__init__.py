"""Machine Groups API: pools of machines for desktop automations, shared and queued."""
