"""``shadow capture``: the capture sidecar in the foreground."""

from __future__ import annotations

import ssl
from pathlib import Path

import click

from shadow.config import load_config, override
from shadow.errors import UsageError

__all__ = ["command"]


@click.command("capture")
@click.option("--upstream", metavar="URL", help="The live service to forward to (the only one).")
@click.option(
    "--listen", metavar="HOST:PORT", help="Where the sidecar listens.  [default: 127.0.0.1:8080]"
)
@click.option(
    "--kafka",
    metavar="BOOTSTRAP",
    help="Tee to this Kafka cluster (HOST:PORT,...), or to kafka://HOST:PORT[,...]/TOPIC.",
)
@click.option("--topic", metavar="TOPIC", help="Kafka topic.  [default: shadow.traces]")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Tee to a JSONL file instead."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="shadow.toml with [capture], [kafka], [redaction], [[slices]] sections.",
)
@click.option("--service", help="Service name stamped on every record.")
@click.option("--sample-rate", type=click.FloatRange(0, 1), help="Share of exchanges to tee.")
@click.option("--spool-dir", type=click.Path(file_okay=False), help="Disk spool directory.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Key for --tls-cert.")
@click.option(
    "--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True
)
def command(
    upstream: str | None,
    listen: str | None,
    kafka: str | None,
    topic: str | None,
    out: Path | None,
    config_path: Path | None,
    service: str | None,
    sample_rate: float | None,
    spool_dir: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    log_format: str,
) -> None:
    """Run the capture sidecar: a transparent reverse proxy in front of one live service that
    tees every exchange (request, response, timing, token usage, slice labels) to Kafka or a
    file, after redacting secrets.

    The live path never waits for the tee: when Kafka is down or slow, records spill to a disk
    spool (drained in order when it returns); past the spool's cap they are dropped and
    counted, never failing a request. Metrics: GET /shadow/metrics; health: GET /shadow/health.

    \b
    Examples:
      shadow capture --upstream http://127.0.0.1:8001 --kafka 127.0.0.1:9092 --topic shadow.traces
      shadow capture --upstream http://127.0.0.1:8001 --kafka kafka://127.0.0.1:9092/shadow.traces
      shadow capture --upstream https://llm.internal --listen 0.0.0.0:8080 --out traces.jsonl
      OPENAI_BASE_URL=http://127.0.0.1:8080/v1 python my_app.py     # point clients at it
    """
    from capture.live.serve import LiveServer
    from capture.sidecar import Sidecar
    from capture.sinks import FileSink, TraceSink
    from shadow.kafka.address import KafkaAddress
    from shadow.kafka.producer import KafkaSink
    from shadow.logs import configure_logging
    from shadow.serving import bind_socket

    config = load_config(config_path)
    capture = override(
        config.capture,
        "capture",
        upstream=upstream,
        listen=listen,
        service=service,
        spool_dir=spool_dir,
    )
    if sample_rate is not None:
        capture = override(
            capture,
            "capture",
            sampling=override(capture.sampling, "capture.sampling", rate=sample_rate),
        )
    if not capture.upstream:
        raise UsageError("no upstream: pass --upstream URL (or set capture.upstream in the config)")
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("--tls-cert and --tls-key go together; pass both to serve HTTPS")
    if kafka and out:
        raise UsageError("choose one sink: --kafka BOOTSTRAP or --out FILE, not both")
    if kafka is not None and KafkaAddress.is_address(kafka):
        kafka, topic = _bootstrap_and_topic(kafka, topic)
    kafka_config = override(config.kafka, "kafka", bootstrap=kafka, topic=topic)
    sink: TraceSink
    if out is not None:
        sink = FileSink(out)
    elif kafka or config_path is not None:
        sink = KafkaSink(kafka_config)
    else:
        raise UsageError("no sink: pass --kafka BOOTSTRAP [--topic T] or --out FILE.jsonl")
    config = override(config, "config", capture=capture, kafka=kafka_config)

    configure_logging(json=log_format == "json")
    host, _, port = capture.listen.rpartition(":")
    host = host.strip("[]")
    sock = bind_socket(host, int(port))
    try:
        server = LiveServer(
            Sidecar.from_config(config, sink),
            host=host,
            sock=sock,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
        )
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise UsageError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    click.echo(
        f"capture listening on {server.url} -> {capture.upstream}, "
        f"teeing to {sink.name} (metrics: {capture.admin_prefix}/metrics)"
    )
    server.run()


def _bootstrap_and_topic(kafka: str, topic: str | None) -> tuple[str, str]:
    """``--kafka kafka://B/T``: the same as ``--kafka B --topic T`` (``--topic`` must agree)."""
    from shadow.kafka.address import KafkaAddress

    try:
        address = KafkaAddress.parse(kafka)
    except UsageError as exc:
        raise UsageError(f"--kafka: {exc}") from None
    if topic is not None and topic != address.topic:
        raise UsageError(
            f"--kafka {kafka} names topic {address.topic} but --topic is {topic}; "
            "drop --topic or make them agree"
        )
    return address.bootstrap, address.topic
