"""The federated demo on MovieLens-100K: every non-pilot user a device, a sample per round.

    python -m benchmarks.bench_demo --data ../shared/data/ml-100k [--rounds 20 --per-round 100]

Bar: final NDCG@10 at least 90% of the centrally trained model of the same run; the section
also states the epsilon reached, the wall time of the whole demo and where the time went.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._report import table, write_section
from edgerec.demo import DemoConfig, run_demo


def _body(report: dict) -> str:
    cfg, t, rows = report["config"], report["timing"], report["rounds"]
    final, central = rows[-1], report["central"]
    ratio = final["ndcg"] / central["ndcg"]
    lines = [
        f"{report['dataset']}: {report['pilot_users']} pilot users ({cfg['pilot_share']:.0%}, trained the "
        f"first model centrally; not devices), {report['devices']} devices (each its own SQLite file, "
        f"identity and credential, hosted in {cfg['workers']} worker processes, talking to a real "
        f"edgerec-server process over HTTP on 127.0.0.1); {cfg['rounds']} rounds of {cfg['per_round']} "
        f"sampled devices, SecAgg ({cfg['graph']} graph), clip C={cfg['clip']}, noise z={cfg['noise']}, "
        f"{cfg['strategy']} lr {cfg['server_lr']} with cosine decay, {cfg['dropout']:.0%} of each round's devices "
        f"dropping before a random later stage (stage deadline {cfg['stage_deadline']:g} s). "
        f"LOO-full on the {report['eval_users']} device users' test items (devices hold everything else); "
        f"the central model is trained on every user's training data in the same run.",
        "",
        table(["round", "model", "NDCG@10", "HR@10", "devices", "survived", "dropped", "epsilon", "wall s"],
              [[r["round"], r["model_version"], f"{r['ndcg']:.4f}", f"{r['hr']:.4f}",
                r.get("participants", "-"), r.get("survivors", "-"), r.get("dropouts", "-"),
                "-" if r.get("epsilon") is None else f"{r['epsilon']:.3g}", f"{r.get('wall_s', 0):.1f}"]
               for r in rows]),
        "",
        f"- Final NDCG@10 {final['ndcg']:.4f} vs central {central['ndcg']:.4f}: **{ratio:.1%}** "
        f"(bar: >= 90%: {'pass' if ratio >= 0.9 else 'FAIL'}); pilot model {rows[0]['ndcg']:.4f} "
        f"({rows[0]['ndcg'] / central['ndcg']:.1%}).",
        f"- Privacy: (epsilon {final['epsilon']:.3g}, delta {report['delta']:g}) from the server's audit "
        f"(dp-accounting RDP, Poisson sampling q = per-round / devices enrolled, {cfg['rounds']} rounds).",
        f"- Wall time of the whole demo: **{t['total_s'] / 60:.1f} min**.",
        "",
        table(["where the time goes", "seconds"], [[k, f"{v:.1f}"] for k, v in _split(t)]),
        "",
        *(_why_short(report) if ratio < 0.9 else []),
        "Device-side seconds are summed over devices (two worker processes run at once, so they add "
        "up to about twice the rounds' wall time); HTTP includes the server's handling of each request; "
        "waiting is the devices' pauses between polls while a stage is open (the stage deadline after a "
        "dropout is most of it). Server figures are from its Prometheus metrics.",
    ]
    return "\n".join(lines)


def _why_short(report: dict) -> list[str]:
    """What the failed bar means (stated, not hidden)."""
    cfg = report["config"]
    m, z, c = cfg["per_round"], cfg["noise"], cfg["clip"]
    t = m // 2 + 1  # the complete graph's threshold: devices calibrate their noise to it
    return [
        "Why the bar is missed: with a cohort of "
        f"{m} devices the noise in the averaged update swamps the signal. Each device adds noise "
        f"for {t} survivors (the secure-aggregation threshold, the fewest the server could unmask), "
        f"so the mean of ~{m} deltas carries noise of std z*C*sqrt({m}/{t})/{m} per weight, "
        f"{z * c * (m / t) ** 0.5 / m:.4f} here, i.e. an L2 norm of about "
        f"{z * c * (m / t) ** 0.5 / m * 478:.1f} over the 228,560 shared weights, against a clipped "
        f"signal of norm at most C={c}. The in-process simulation (`edgerec.federated.simulate`, same "
        "pilot, same split) shows the same picture without the network: from this pilot, 10 rounds "
        "of 100 devices without any noise moved NDCG@10 from 0.0403 to 0.0404 with the validation-"
        "chosen local settings (SGD lr 0.2, 2 epochs, C=1), and to 0.0495 with larger steps (C=5, "
        "local lr 0.5, 3 epochs, server lr 2, 8 rounds); z=0.3 (epsilon 45 after 10 rounds) stayed "
        "at 0.040. Reaching 90% of central privately needs far larger cohorts per round (thousands "
        "of devices, as in production federated learning), or sharing fewer weights per round "
        "(e.g. the user tower only, item tables from the pilot); both are follow-ups, not done here.",
        "",
    ]


def _split(t: dict) -> list[tuple[str, float]]:
    return [
        ("central training (comparison model)", t["central_training_s"]),
        ("pilot training (first global model)", t["pilot_training_s"]),
        ("device creation + enrolment over HTTP", t["device_setup_s"]),
        ("rounds, wall (open to model published, all stages)", t["rounds_s"]),
        ("  devices: local training (summed)", t["devices_train_s"]),
        ("  devices: secure aggregation client work, privatize + mask + shares (summed)", t["devices_secagg_s"]),
        ("  devices: HTTP requests (summed)", t["devices_http_s"]),
        ("  devices: waiting between polls (summed)", t["devices_wait_s"]),
        ("  devices: bundle download + verify + install (summed)", t["devices_install_s"]),
        ("  server: accepting stage messages", t.get("server_edgerec_stage_receive_seconds_total", 0.0)),
        ("  server: closing stages (secure aggregation, unmask, decode)", t.get("server_edgerec_stage_close_seconds_sum", 0.0)),
        ("  server: publishing (ONNX, int8, sign, store)", t.get("server_edgerec_publish_seconds_sum", 0.0)),
        ("evaluation after each round (LOO-full)", t["evaluation_s"]),
        ("operator commands (round open, init, tokens: subprocesses)", t["operator_cli_s"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/ml-100k")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--dropout", type=float, default=0.02)
    parser.add_argument("--pilot-share", type=float, default=0.15)
    parser.add_argument("--out", default="reports/demo-ml100k")
    parser.add_argument("--from-report", help="write the section from a report.json of an earlier run")
    args = parser.parse_args()
    if args.from_report:
        report = json.loads(Path(args.from_report).read_text())
        c = report["config"]
        write_section("demo", "Federated demo on MovieLens-100K (edgerec demo)",
                      f"python -m benchmarks.bench_demo --data {c['data']} --rounds {c['rounds']} "
                      f"--per-round {c['per_round']} --noise {c['noise']} --dropout {c['dropout']} "
                      f"--pilot-share {c['pilot_share']}",
                      _body(report))
        return
    cfg = DemoConfig(data=args.data, rounds=args.rounds, per_round=args.per_round, noise=args.noise,
                     dropout=args.dropout, pilot_share=args.pilot_share, out=args.out)
    report = run_demo(cfg)
    Path(args.out, "bench.json").write_text(json.dumps(report["timing"], indent=1))
    write_section("demo", "Federated demo on MovieLens-100K (edgerec demo)",
                  f"python -m benchmarks.bench_demo --data {args.data} --rounds {args.rounds} "
                  f"--per-round {args.per_round} --noise {args.noise} --dropout {args.dropout} "
                  f"--pilot-share {args.pilot_share}",
                  _body(report))


if __name__ == "__main__":
    main()
