"""``qwen3 recipe run NAME|FILE.toml --out DIR [--resume]``, ``qwen3 recipe publish DIR`` and ``qwen3 recipe list``."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recipe", help="run the miniature Qwen3 pipeline end to end (docs/recipe.md)"
    )
    commands = parser.add_subparsers(dest="recipe_command", metavar="ACTION")
    run = commands.add_parser("run", help="run a recipe preset (smoke, tiny, small) or a recipe TOML file")
    run.add_argument("recipe", help="preset name or path to a .toml recipe")
    run.add_argument("--out", required=True, help="run directory (report.md, results.json, final/, student/)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    run.add_argument("--overwrite", action="store_true", help="delete --out first")
    run.add_argument(
        "--no-progress", action="store_true", help="one line per phase instead of the live display"
    )
    run.add_argument(
        "--stop-after", metavar="PHASE", help="stop after this phase (resume later with --resume)"
    )
    run.set_defaults(handler=run_recipe)
    publish = commands.add_parser(
        "publish", help="copy a finished run to docs/results/NAME and show its tables in README.md"
    )
    publish.add_argument(
        "run_dir", help="the finished run's --out directory (report.md, results.json, plots/)"
    )
    publish.add_argument("--name", help="docs/results/NAME (default: the recipe's name)")
    publish.add_argument("--repo", default=".", help="the repository's root, holding README.md (default: .)")
    publish.set_defaults(handler=publish_run)
    listing = commands.add_parser("list", help="list the shipped recipe presets")
    listing.set_defaults(handler=list_recipes)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def list_recipes(args: argparse.Namespace) -> int:
    from qwen3.recipes.config import presets

    print("\n".join(presets()))
    return 0


def run_recipe(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError
    from qwen3.recipes.config import load_recipe
    from qwen3.recipes.run import RecipeRun, RecipeStopped
    from qwen3.train.settings import SettingsError

    if args.resume and args.overwrite:
        raise UserFacingError("--resume and --overwrite exclude each other")
    try:
        recipe = load_recipe(args.recipe)
    except SettingsError as err:
        raise UserFacingError(str(err)) from None
    command = shlex.join(["qwen3", "recipe", "run", args.recipe, "--out", args.out])
    run = RecipeRun(recipe, args.out, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.no_progress, stop_after=args.stop_after, command=command)  # fmt: skip
    try:
        run.run()
    except RecipeStopped as stop:
        print(f"{stop}; continue with: {command} --resume", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {command} --resume", file=sys.stderr)
        return 130
    print(f"wrote {run.path('report.md')}")
    return 0


def publish_run(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError
    from qwen3.recipes.publish import PublishError, publish

    try:
        target = publish(args.run_dir, args.repo, args.name)
    except PublishError as err:
        raise UserFacingError(str(err)) from None
    print(f"published {args.run_dir} to {target} and rewrote {target.parents[2] / 'README.md'}")
    return 0
