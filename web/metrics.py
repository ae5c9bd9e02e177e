"""``GET /metrics``: the server's state for Prometheus (text exposition format 0.0.4).

ARCHITECTURE.md, web/: operations staff scrape this next to the status page. Like
``/api/status`` it needs no token and shows no secrets (camera URLs are not in it). Every
value is read at scrape time from the running parts; nothing is counted twice:

- conference: sites online / total, floor held, recording on, hands raised;
- signalling: joins, frames received, refused frames (counters since start);
- relay: publications and slots now, packets forwarded by the slots that exist now;
- each wall output: frames, skipped ticks, errors, keyframes (counters), the encoder's rate;
- each RTSP camera: up (live), reconnect attempts, frame rate;
- the cascade uplink (if configured): up, connects and failures;
- per online site with a link report: round-trip time, loss, receive rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from signalling.uplink import Uplink
from web.cameras import CameraGateway

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["CONTENT_TYPE", "escape_label", "render_metrics"]

#: The Prometheus text format's media type (its ``version`` parameter is required).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self.lines.append(f"# HELP huishang_{name} {help_text}")
        self.lines.append(f"# TYPE huishang_{name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            self.lines.append(f"huishang_{name}{{{text}}} {value:g}" if text else
                              f"huishang_{name} {value:g}")  # fmt: skip

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.metric(name, kind, help_text, [({}, value)])


def render_metrics(app: Huishang) -> str:
    """The exposition text for *app* now."""
    out = _Writer()
    conference = app.conference
    snapshot = conference.snapshot()
    sites = snapshot["sites"]
    out.one(
        "sites_online", "gauge", "Sites in the conference now.", sum(s["online"] for s in sites)
    )
    out.one("sites_total", "gauge", "Sites configured.", len(sites))
    out.one("floor_held", "gauge", "1 while a site holds the floor.", conference.floor is not None)
    out.one("recording", "gauge", "1 while the chair's record switch is on.", conference.recording)
    out.one("hands_raised", "gauge", "Raised hands waiting.", len(snapshot["hands"]))
    stats = app.signalling.stats
    out.one("signalling_joins_total", "counter", "Sessions welcomed.", stats["joins"])
    out.one("signalling_frames_total", "counter", "Frames received.", stats["frames_in"])
    out.one("signalling_errors_total", "counter", "Requests refused.", stats["errors"])
    links = [s for s in sites if s["online"] and s.get("link")]
    for key, name, help_text in (
        ("rtt_ms", "site_rtt_ms", "Round-trip time to the site's media connection."),
        ("loss", "site_loss_ratio", "Packet loss the site's media connection reports."),
        ("kbps", "site_receive_kbps", "Media the server receives from the site."),
    ):
        out.metric(
            name,
            "gauge",
            help_text,
            [({"site": s["id"]}, float(s["link"].get(key) or 0)) for s in links],
        )
    limits = sorted(
        (site, limit)
        for site, limit in conference.plan.video_limits.items()
        if conference.live_session(site) is not None
    )
    out.metric(
        "site_video_limit_height",
        "gauge",
        "Lines the server asks of a site that only wall tiles show (pause video_limit).",
        [({"site": site}, limit.height) for site, limit in limits],
    )
    out.metric(
        "site_video_limit_fps",
        "gauge",
        "Frame rate the server asks of a site that only wall tiles show.",
        [({"site": site}, limit.fps) for site, limit in limits],
    )
    if app.media is not None:
        relay = app.media.relay
        slots = relay.slots.values()
        out.one("relay_publications", "gauge", "Publications now.", len(relay.publications))
        out.one("relay_slots", "gauge", "Slots now.", len(slots))
        out.one(
            "relay_slot_packets",
            "gauge",
            "Packets forwarded by the slots that exist now (since each was made).",
            sum(slot.packets_forwarded for slot in slots),
        )
    if app.walls is not None:
        outputs = app.walls.outputs
        for field, kind, help_text in (
            ("frames", "counter", "Wall frames composed and encoded."),
            ("skipped", "counter", "Wall ticks skipped: the previous frame was still being made."),
            ("errors", "counter", "Wall frames that failed."),
            ("keyframes", "counter", "Wall keyframes sent."),
        ):
            out.metric(
                f"wall_{field}_total",
                kind,
                help_text,
                [({"output": o}, getattr(w.stats, field)) for o, w in outputs.items()],
            )
    for gateway in app.gateways:
        if isinstance(gateway, CameraGateway):
            statuses = {site: camera.status() for site, camera in gateway.cameras.items()}
            out.metric(
                "camera_up",
                "gauge",
                "1 while the camera is pulled and live.",
                [({"site": s}, st.state.value == "live") for s, st in statuses.items()],
            )
            out.metric(
                "camera_attempts",
                "gauge",
                "Connection attempts in the camera's current episode of retrying.",
                [({"site": s}, st.attempts) for s, st in statuses.items()],
            )
            out.metric(
                "camera_fps",
                "gauge",
                "Frames per second the camera delivers.",
                [({"site": s}, st.fps) for s, st in statuses.items()],
            )
        elif isinstance(gateway, Uplink):
            status = gateway.status()
            out.one(
                "uplink_up", "gauge", "1 while the cascade uplink is up.", status["state"] == "up"
            )
            out.one(
                "uplink_connects_total", "counter", "Uplink connections made.", status["connects"]
            )
            out.one(
                "uplink_failures_total", "counter", "Uplink attempts failed.", status["failures"]
            )
    return "\n".join(out.lines) + "\n"
