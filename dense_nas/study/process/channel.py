"""A JSON-lines channel between a study worker and the process that trains its trial.

The worker owns the Optuna study; the trial process owns the Trainer. They talk over a
Unix socket pair: the trial process sends ``epoch`` reports and a final ``result`` (or
``error``); the worker answers each report with a prune decision. Keeping the storage
out of the trial process is what lets pruning work under DDP with every storage.

Example:
    >>> import socket
    >>> a, b = socket.socketpair()
    >>> left, right = Channel(a), Channel(b)
    >>> left.send({"type": "epoch", "epoch": 1, "value": 0.5})
    >>> right.receive()
    {'type': 'epoch', 'epoch': 1, 'value': 0.5}
"""

from __future__ import annotations

import json
import socket

from dense_nas.study.process.messages import Message


class ChannelClosed(ConnectionError):
    """The other end went away (its process exited or was killed)."""


class Channel:
    """Newline-delimited JSON messages over a connected stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        """Adopt an inherited socket file descriptor."""
        return cls(socket.socket(fileno=fd))

    def send(self, message: Message) -> None:
        """Write one message; raises :class:`ChannelClosed` if the peer is gone."""
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as err:
            raise ChannelClosed(str(err)) from err

    def receive(self) -> Message:
        """Block for the next message; raises :class:`ChannelClosed` at end of stream."""
        try:
            line = self._reader.readline()
        except OSError as err:
            raise ChannelClosed(str(err)) from err
        if not line:
            raise ChannelClosed("peer closed the channel")
        message: Message = json.loads(line)
        return message

    def request(self, message: Message) -> Message:
        """Send a message and wait for the reply (the caller knows which kind it is)."""
        self.send(message)
        return self.receive()

    def close(self) -> None:
        """Close both directions; the peer's next receive raises ChannelClosed."""
        self._reader.close()
        self.sock.close()
