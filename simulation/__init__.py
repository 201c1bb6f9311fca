"""Simulation, not product: a simulated audience, baseline policies, the regret scenarios,
the compounding-loop simulation and the scripted copywriter (with its HTTP server).

It drives the service through its public seams and calls the service's own rules; the
service never imports it. Installed with the ``simulation`` extra (matplotlib for the plots).
"""
