#!/usr/bin/env python3
"""Tables and charts of `scripts/bench.sh sweep`.

    scripts/sweep-report.py RAW_JSONL OUT_DIR

Reads the JSON lines of the sweep (each tagged with "sweep", "size" and
"broker"), prints one Markdown table per sweep (midge, Mosquitto and their
ratio for each measured quantity) and, when matplotlib is available, draws
OUT_DIR/sweep-<kind>.png: each quantity against the size, log-log, one line
per broker. Without matplotlib the tables are still complete.
"""
import json
import sys

# Per sweep: (JSON key, label, unit, higher is better)
METRICS = {
    "conns": [
        ("bytes_per_conn", "broker memory per connection", "bytes", False),
        ("conns_per_sec", "connections set up per second", "1/s", True),
    ],
    "subs": [
        ("bytes_per_sub", "broker memory per subscription", "bytes", False),
        ("subs_per_sec", "subscriptions granted per second", "1/s", True),
        ("msgs_per_sec", "publishes routed per second", "1/s", True),
        ("broker_cpu_us_per_msg", "broker CPU per routed publish", "µs", False),
    ],
    "retained": [
        ("bytes_per_msg", "broker memory per retained message", "bytes", False),
        ("store_msgs_per_sec", "retained messages stored per second", "1/s", True),
        ("secs", "time for a # subscriber to receive them all", "s", False),
    ],
    "fanout": [
        ("msgs_per_sec", "deliveries per second", "1/s", True),
        ("broker_cpu_us_per_msg", "broker CPU per delivery", "µs", False),
    ],
}
TITLES = {
    "conns": "Idle connections (one subscription each)",
    "subs": "Distinct subscriptions (on 100 connections)",
    "retained": "Retained messages",
    "fanout": "Fan-out: one publisher, N subscribers on one topic",
}


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}".replace(",", " ")
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def main():
    raw, out = sys.argv[1], sys.argv[2]
    points = {}  # (sweep, size) -> broker -> line
    for text in open(raw, encoding="utf-8"):
        text = text.strip()
        if not text:
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        points.setdefault((line.get("sweep"), line.get("size")), {})[line.get("broker")] = line
    brokers = sorted({b for p in points.values() for b in p}, key=lambda b: b != "midge")
    for kind, metrics in METRICS.items():
        sizes = sorted(s for (k, s) in points if k == kind)
        if not sizes:
            continue
        print(f"## {TITLES[kind]}\n")
        head = "| size |"
        rule = "|---:|"
        for _, label, unit, _ in metrics:
            for b in brokers:
                head += f" {label} ({unit}), {b} |"
                rule += "---:|"
            if len(brokers) == 2:
                head += " midge ÷ Mosquitto |"
                rule += "---:|"
        print(head)
        print(rule)
        for size in sizes:
            row = f"| {size:,} |".replace(",", " ")
            p = points[(kind, size)]
            for key, _, _, _ in metrics:
                vals = []
                for b in brokers:
                    line = p.get(b, {})
                    v = line.get(key)
                    vals.append(v)
                    row += f" {fmt(v) if 'error' not in line else 'error'} |"
                if len(brokers) == 2:
                    a, m = vals
                    row += f" {a / m:.2f} |" if a and m else " — |"
            print(row)
        errors = [
            f"{b} at {s}: {points[(kind, s)][b]['error']}"
            for s in sizes
            for b in brokers
            if "error" in points[(kind, s)].get(b, {})
        ]
        for e in errors:
            print(f"\nError: {e}")
        print()
        draw(kind, metrics, sizes, points, brokers, f"{out}/sweep-{kind}.png")


def draw(kind, metrics, sizes, points, brokers, png):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(matplotlib missing: no {png})\n")
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    if len(metrics) == 1:
        axes = [axes]
    for ax, (key, label, unit, better_high) in zip(axes, metrics):
        for b in brokers:
            xs, ys = [], []
            for s in sizes:
                v = points[(kind, s)].get(b, {}).get(key)
                if isinstance(v, (int, float)) and v > 0:
                    xs.append(s)
                    ys.append(v)
            if xs:
                ax.plot(xs, ys, marker="o", label=b)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("size")
        ax.set_ylabel(unit)
        ax.set_title(label + (" (higher is better)" if better_high else " (lower is better)"), fontsize=9)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(TITLES[kind], fontsize=11)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
