"""Talking to the gateway and the Enphase cloud."""
