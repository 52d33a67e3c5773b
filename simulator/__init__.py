"""Simulated OpenAI- and Anthropic-compatible LLM providers with scripted timing and faults.

`create_app(config, seed)` (simulator.server) builds the aiohttp app, `load_simulator_config`
(simulator.config) reads the TOML file, simulator.runner runs it in a thread or a process,
and `perfgen simulate` (simulator.cli) serves it from the command line.
"""
