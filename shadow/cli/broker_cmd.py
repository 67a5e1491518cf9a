"""``shadow broker``: the embedded Kafka-compatible broker in the foreground."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from shadow.kafka.broker import EmbeddedBroker

__all__ = ["command"]


@click.command("broker")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=9092,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
def command(host: str, port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) until Ctrl-C or SIGTERM.

    Prints the bootstrap address for Kafka clients once the broker answers requests. Storage is
    in memory only: stopping or restarting the broker drops every topic and every record. The
    broker process stops with this command however it ends (kill -9 included, on Linux). For
    production, point --kafka options at a real cluster (Apache Kafka, Redpanda, MSK) instead.

    \b
    Example:
      shadow broker --port 9092 &
      shadow capture --upstream http://127.0.0.1:8001 --kafka 127.0.0.1:9092 --topic shadow.traces
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with EmbeddedBroker(host, port) as broker:
            click.echo(
                f"broker ready; bootstrap servers: {broker.bootstrap} (Ctrl-C stops it); "
                "data is kept in memory only: a restart empties every topic"
            )
            while not stop.wait(0.5):
                if not broker.running:
                    raise click.ClickException("the broker process exited unexpectedly")
            click.echo("stopping broker", err=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
