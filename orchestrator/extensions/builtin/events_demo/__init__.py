"""Named event streams over HTTP: publish, and subscribe as Server-Sent Events."""
