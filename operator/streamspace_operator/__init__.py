"""StreamSpace operator: Kopf handlers that reconcile the stream.space custom resources."""
