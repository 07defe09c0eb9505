"""The co-design study (whole networks on accelerator configs, WS vs OS vs best per layer), its markdown and
charts, and SCALE-Sim as an independent reference for the machine's compute cycles.
"""
