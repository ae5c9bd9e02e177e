"""Huishang's control plane: the wire protocol, the conference state machine and its server."""
