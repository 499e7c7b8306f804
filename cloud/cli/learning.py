"""`pli cloud`: campaigns, selection, weak labels and learning runs. Only argparse at module level (see pli/cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.crawl import cli as crawl_cli

# cloud.selection's STRATEGIES and DEFAULT_STRATEGY, spelt out so `--help` needs no numpy (a test keeps
# them equal)
SELECT_STRATEGIES = ("coreset", "uncertainty", "hybrid", "random", "crops", "faults")
DEFAULT_STRATEGY = "uncertainty"


def register(csub: argparse._SubParsersAction) -> None:
    p = csub.add_parser("select", help="choose a campaign's photos for operators to label (random, coreset, "
                        "uncertainty, hybrid, crops, faults)",
                        description="Writes the choice as a dataset version and, with --project, "
                        "makes it Label Studio tasks pre-annotated by the registry's model. --queue runs it as a job.")
    p.add_argument("--campaign", required=True)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=SELECT_STRATEGIES,
                   help="default %(default)s: the one that beat random beyond the seeds' spread (docs/benchmarks.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, help="PyTorch weights for the embeddings (default models/pli-default.pt)")
    p.add_argument("--model", type=Path, help="ONNX detector for the uncertainty (default the shipped one)")
    p.add_argument("--project", type=int, help="Label Studio project to put the tasks in")
    p.add_argument("--cloud-url", help="the cloud as Label Studio reaches it (with --project)")
    p.add_argument("--missed", type=int, help="'missed fault' review tasks: photos where the model is unsure but "
                   "raised nothing (default a fifth of the budget with --project)")
    p.add_argument("--queue", action="store_true", help="enqueue for `pli cloud worker` instead of running here")
    p.set_defaults(func=_select)

    p = csub.add_parser("pseudo-label", help="weak labels for a campaign's unlabelled photos (a dataset version)",
                        description="The model's boxes, kept where the class's F1-best threshold on validation is "
                        "cleared and test-time augmentation (and the next frame of a flight) agrees; reviews remove "
                        "false alarms and add confirmed faults. Prints the batch's precision and recall.")
    p.add_argument("--campaign", required=True)
    p.add_argument("--labelled", type=Path, help="a selection (pli cloud select) whose photos keep their true labels")
    p.add_argument("--model", type=Path, help="the teacher, ONNX (default the shipped model)")
    p.add_argument("--project", type=int, help="Label Studio project: the pseudo-labelled photos become its tasks")
    p.add_argument("--cloud-url", help="the cloud as Label Studio reaches it (with --project)")
    p.add_argument("--queue", action="store_true", help="enqueue for `pli cloud worker` instead of running here")
    p.set_defaults(func=_pseudo_label)

    p = csub.add_parser("learn", help="fine-tune a candidate on a campaign's labels with replay, gate it, release "
                        "it to the canary group", description="From the current release's weights (class head grown "
                        "to the campaign's class list): the campaign's labels (or a pseudo-label version), a replay "
                        "set chosen by coreset from earlier campaigns; scored with the parent on every campaign's "
                        "frozen test set; released to the canary group only if the newest campaign improves, no "
                        "earlier one drops more than --margin mAP50 points and every build keeps its golden frames.")
    p.add_argument("--campaign", required=True)
    p.add_argument("--epochs", type=int, help="default 10 (the service's recipe, cloud/learning.py:Recipe, "
                   "PLI_LEARN_RECIPE changes it)")
    p.add_argument("--imgsz", type=int, help="default 640")
    p.add_argument("--batch", type=int, help="default 8")
    p.add_argument("--freeze", type=int, help="layers kept frozen (default 10: the backbone)")
    p.add_argument("--lr0", type=float, help="SGD's rate (default 0.002)")
    p.add_argument("--replay-repeat", type=int, help="a campaign smaller than its replay share is shown up to this "
                   "many times (default 2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--replay", type=int, help="photos of earlier campaigns replayed, shared evenly (default 200)")
    p.add_argument("--pseudo", type=Path, help="a pseudo-label version's data.yaml (pli cloud pseudo-label)")
    p.add_argument("--labelled", type=Path, help="a selection (pli cloud select): only its photos' labels")
    p.add_argument("--margin", type=float, default=1.5, help="the most mAP50 points an earlier campaign may lose")
    p.add_argument("--from", dest="weights", type=Path, help="start from these weights, not the current release's")
    p.add_argument("--queue", action="store_true", help="enqueue for `pli cloud worker` instead of running here")
    p.set_defaults(func=_learn)

    cp = csub.add_parser("campaign", help="campaigns: datasets with a frozen test set",
                         description="Import a campaign once: train / val / test (a fifth of its photos, frozen: "
                         "every release is scored on the same ones).")
    cpsub = cp.add_subparsers(dest="campaign_command", required=True, metavar="{add,list,import-crawl}")
    p = cpsub.add_parser("add", help="import a campaign's photos and freeze its test set")
    p.add_argument("name")
    p.add_argument("src", type=Path)
    p.add_argument("--format", required=True, choices=["voc", "coco", "yolo", "labelstudio"])
    p.add_argument("--map", action="append", metavar="SRC=DST", help="rename a source class (DST empty: drop it)")
    p.add_argument("--class-list", type=int, help="the class-list version the campaign is labelled with")
    p.add_argument("--group-by", help="keep groups (flights) on one side of the split (see pli data import)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-file", type=Path, help="fixed splits (pli data import's split.json form) instead of "
                   "the random fifth: e.g. the model's own held-out photos as the test set")
    p.add_argument("--description", default="")
    p.set_defaults(func=_campaign_add)
    p = cpsub.add_parser("list", help="campaigns, their frozen test sets and their crawled pools")
    p.set_defaults(func=_campaign_list)
    p = cpsub.add_parser("import-crawl", help="a crawl's kept photos as a campaign's unlabelled pool",
                         description="What `pli data crawl --campaign NAME` does after its crawl, for a folder "
                         "crawled without it: the manifest's photos into the object store and the pool_photos "
                         "table (source, licence, hashes, relevance); the aside ones recorded, never offered for "
                         "labelling; photos already in a pool skipped. A new NAME starts an unlabelled campaign.")
    p.add_argument("name")
    p.add_argument("crawl", type=Path, help="the crawl's folder (its manifest.jsonl)")
    p.set_defaults(func=_campaign_import_crawl)
    crawl_cli.INTO_CAMPAIGN[:] = [_into_campaign]  # the crawl's --campaign step is the cloud's
    crawl_cli.KNOWN_FROM_CLOUD[:] = [_known_from_cloud]


def _here_or_queued(args: argparse.Namespace, kind: str, run, **kw) -> dict | None:
    """Run a job's function here and return its result, or with --queue enqueue it for
    `pli cloud worker` (None)."""
    from cloud.jobs import enqueue

    if args.queue:
        print(f"job {enqueue(kind, **kw)} queued")
        return None
    return run(**kw)


def _select(args: argparse.Namespace) -> int:
    from cloud import selection_job
    from cloud.db import upgrade

    upgrade()
    out = _here_or_queued(args, "select", selection_job.run_selection, campaign=args.campaign, budget=args.budget,
                          strategy=args.strategy, seed=args.seed,
                          weights=str(args.weights) if args.weights else None,
                          model=str(args.model) if args.model else None, project=args.project,
                          cloud_url=args.cloud_url, missed=args.missed)
    if out is not None:
        print(json.dumps(out))
    return 0


def _selected(path: Path | None) -> list[str] | None:
    """The photos of a selection (pli cloud select's dataset version)."""
    return json.loads(path.read_text())["images"] if path else None


def _pseudo_label(args: argparse.Namespace) -> int:
    from cloud import pseudo_labels
    from cloud.db import upgrade

    upgrade()
    out = _here_or_queued(args, "pseudo_label", pseudo_labels.run, campaign=args.campaign,
                          labelled=_selected(args.labelled), model=str(args.model) if args.model else None,
                          project=args.project, cloud_url=args.cloud_url)
    if out is not None:
        print(json.dumps(out))
    return 0


def _learn(args: argparse.Namespace) -> int:
    from cloud import learning
    from cloud.db import upgrade

    upgrade()
    out = _here_or_queued(args, "learn", learning.learn, campaign=args.campaign, trigger="on demand (cli)",
                          recipe={k: v for k in ("epochs", "imgsz", "batch", "freeze", "lr0", "replay_repeat", "seed")
                                  if (v := getattr(args, k)) is not None},
                          replay=args.replay, pseudo=str(args.pseudo) if args.pseudo else None,
                          labelled=_selected(args.labelled), margin_points=args.margin,
                          weights=str(args.weights) if args.weights else None)
    if out is None:
        return 0
    print(json.dumps({k: out[k] for k in ("run", "passed", "reasons", "release")}))
    for who in ("parent", "candidate"):
        print(f"  {who:<9} " + ", ".join(f"{c} mAP50 {v['map50']:.3f}" for c, v in out["matrix"][who].items()))
    return 0 if out["passed"] else 3


def _campaign_add(args: argparse.Namespace) -> int:
    from cloud import campaigns
    from cloud.db import session_scope, upgrade
    from training.dataset import parse_class_map

    upgrade()
    with session_scope() as s:
        row = campaigns.add(s, args.name, args.src, args.format, parse_class_map(args.map), args.class_list,
                            args.seed, args.description, args.group_by, args.split_file)
        print(f"campaign {row.name}: {row.data}; {len(row.test_set)} photos frozen as its test set")
    return 0


def _into_campaign(out: Path, name: str) -> str:
    from cloud import pool

    return json.dumps(pool.add_crawl(out, name))


def _known_from_cloud() -> list[tuple[str, str, str]]:
    from cloud import pool

    return pool.known()


def _campaign_import_crawl(args: argparse.Namespace) -> int:
    print(_into_campaign(args.crawl, args.name))
    return 0


def _campaign_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from cloud import pool
    from cloud.db import session_scope, upgrade
    from cloud.models import Campaign

    upgrade()
    with session_scope() as s:
        for c in s.scalars(select(Campaign).order_by(Campaign.id)):
            p = pool.summary(s, c.name)
            crawled = f"  pool {p['pool']} (+{p['aside']} aside)" if p["pool"] or p["aside"] else ""
            print(f"{c.name:<16} class list {c.class_list_version}  test {len(c.test_set)} photos{crawled}  "
                  f"{c.data or 'no dataset yet'}")
    return 0
