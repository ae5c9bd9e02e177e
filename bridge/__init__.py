"""Huishang's media plane on aiortc: RTP-level relay, wall compositor and gateways.

This package never imports :mod:`signalling` or :mod:`web`: it knows SDP, tracks and packets,
not roles or floors.
"""
