"""Stand-in for ffprobe's packet listing on a GPU machine that has no FFmpeg (benchmarks/gpu_check.sh only).

core.video asks ffprobe two things: the packets (`-show_entries packet=pts_time,dts_time,duration_time,flags -of
csv=p=0 PATH`) and the frame size (`-show_entries stream=width,height`); this prints the same lines from PyAV, which wraps the same libav demuxer, so the GPU check
runs where Debian's ffmpeg cannot be installed. The app and the test suite always use the real ffprobe.
"""
import sys

import av


def _time(value, time_base) -> str:
    return "N/A" if value is None else f"{float(value * time_base):.6f}"


def main(entries: str, path: str) -> None:
    with av.open(path) as container:
        stream = container.streams.video[0]
        if entries.startswith("stream="):
            print(f"{stream.codec_context.width},{stream.codec_context.height}")
            return
        for packet in container.demux(stream):
            if packet.size == 0:          # the flush packet PyAV adds at the end
                continue
            flags = ("K" if packet.is_keyframe else "_") + ("D" if packet.is_discard else "_")
            print(",".join([_time(packet.pts, packet.time_base), _time(packet.dts, packet.time_base),
                            _time(packet.duration, packet.time_base), flags]))


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("-show_entries") + 1], sys.argv[-1])
