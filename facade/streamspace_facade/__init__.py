"""StreamSpace facade: the aiohttp REST and WebSocket front of the stream.space resources."""
