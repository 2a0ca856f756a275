#!/usr/bin/python3
"""A real RTSP server for the stream tests, on 127.0.0.1: Debian's GStreamer RTSP server serving a folder of
JPEG frames, looped at --fps, as RTP/JPEG (MJPEG), optionally behind basic authentication.

Runs under the system python3 (/usr/bin/python3: python3-gi, gir1.2-gst-rtsp-server-1.0 and
gstreamer1.0-plugins-good from requirements-system.txt); the venv has no gi. Prints "ready" once it listens.

    /usr/bin/python3 tests/streams/rtsp_server.py --port 8554 --frames DIR [--fps 10] [--user U --password P]

serves rtsp://[U:P@]127.0.0.1:PORT/stream. SIGTERM/SIGKILL stop it; SIGSTOP stalls it (the connection stays
open, no frame comes), which is how the tests stall a server.
"""

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--frames", required=True, help="folder of 000000.jpg, 000001.jpg, ... (all one size)")
parser.add_argument("--fps", type=int, default=10)
parser.add_argument("--user")
parser.add_argument("--password")
args = parser.parse_args()

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(str(args.port))
factory = GstRtspServer.RTSPMediaFactory()
frames = [path.read_bytes() for path in sorted(Path(args.frames).glob("*.jpg"))]
if not frames:
    sys.exit(f"no .jpg frames in {args.frames}")
# appsrc fed from a timer, so frames leave at --fps as a camera's do (multifilesrc sends them as fast as it can);
# jpegdec ! jpegenc gives rtpjpegpay the frame size in its caps (jpegparse would too, but is in plugins-bad)
factory.set_launch(f"( appsrc name=camera is-live=true format=time do-timestamp=true "
                   f"caps=image/jpeg,framerate={args.fps}/1 ! jpegdec ! jpegenc ! rtpjpegpay name=pay0 pt=26 )")
factory.set_shared(True)  # one pipeline for every client, as a camera has


def feed(media):
    camera = media.get_element().get_by_name("camera")
    sent = [0]

    def push():
        buffer = Gst.Buffer.new_wrapped(frames[sent[0] % len(frames)])
        sent[0] += 1
        return camera.emit("push-buffer", buffer) == Gst.FlowReturn.OK  # False (media gone) ends the timer

    GLib.timeout_add(1000 // args.fps, push)


factory.connect("media-configure", lambda _factory, media: feed(media))
if args.user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, args.user)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role(args.user, "media.factory.access", True)
    permissions.add_permission_for_role(args.user, "media.factory.construct", True)
    factory.set_permissions(permissions)
server.get_mount_points().add_factory("/stream", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
loop = GLib.MainLoop()
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
print("ready", flush=True)
loop.run()
