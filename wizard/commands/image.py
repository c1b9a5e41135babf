"""`meshstead image base|build`: a platform's cached base, and a node's flashable image."""

import time
from pathlib import Path

from .. import sites
from ..images import base as bases
from ..images import personalise, recipe
from .output import add_vault_option, err, out, site_dir


def _human(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def ensure_base(platform: str, rebuild: bool = False) -> bases.Base:
    wanted = recipe.load(platform)
    started = time.monotonic()
    with err.status(f"Base {platform}: starting") as status:
        base, built = bases.ensure(wanted, lambda msg: status.update(f"Base {platform}: {msg}"), rebuild=rebuild)
    info = base.info
    verb = f"built in {time.monotonic() - started:.0f} s" if built else "cached"
    err.print(f"Base {platform} ({verb}): {base.image}, {_human(info['size'])}, built {info['built']}")
    return base


def cmd_base(args) -> None:
    base = ensure_base(recipe.base_platform(args.platform), args.rebuild)
    out.print(str(base.image))


def _write_hint(path: Path) -> str:
    if path.name.endswith(".zst"):
        return f"zstd -dc {path} | sudo dd of=/dev/sdX bs=4M conv=fsync status=progress"
    return f"sudo dd if={path} of=/dev/sdX bs=4M conv=fsync status=progress"


def cmd_build(args) -> None:
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    node = sites.get_node(opened.site, args.node)
    platform = recipe.base_for_node(node.name, node.platform)
    outdir = Path(args.out)
    personalise.check_out_dir(outdir)  # before a base build that could take minutes
    base = ensure_base(platform)
    with err.status(f"Image {node.name}: starting") as status:
        built = personalise.build(base, opened, node.name, outdir, raw=args.raw,
                                  progress=lambda msg: status.update(f"Image {node.name}: {msg}"))
    out.print(f"Image for {node.name}: {built.path}")
    out.print(f"  size {_human(built.size)}, sha256 {built.sha256} (also in {built.path.name}.sha256), "
              f"made in {built.seconds:.1f} s")
    out.print(f"  holds {node.name}'s private keys: written 0600; keep it like a key, the node scrubs them "
              "from the card at first boot")
    out.print(f"  write it to a card: {_write_hint(built.path)}")
    out.print(f"  or: sudo bmaptool copy --nobmap {built.path} /dev/sdX")
    out.print("  or with Raspberry Pi Imager: Choose OS > Use custom > this file")
    if platform == "amd64":
        out.print(f"  try it in the lab: meshstead lab boot {built.path} --site {opened.directory}")


def register(sub, site_option) -> None:
    image = sub.add_parser("image", help="flashable images: a platform's base, a node's image"
                           ).add_subparsers(dest="image_command", required=True)
    base = image.add_parser("base", help="build or reuse the cached base image of a platform")
    base.add_argument("--platform", required=True, help="which base: " + ", ".join(recipe.platforms())
                      + f"; a node platform ({', '.join(sorted(recipe.PLATFORM_BASES))}) names its base")
    base.add_argument("--rebuild", action="store_true", help="build it again even if it is cached")
    base.set_defaults(func=cmd_base)
    build = image.add_parser("build", parents=[site_option], help="a node's flashable image: its platform's "
                             "base plus the node's seed (identity and settings), configured at first boot")
    build.add_argument("node", help="the node (its platform chooses the base)")
    build.add_argument("--out", default="images", help="directory for the image (default: images)")
    build.add_argument("--raw", action="store_true", help="write NODE-PLATFORM.img instead of a zstd-compressed "
                       ".img.zst")
    add_vault_option(build)
    build.set_defaults(func=cmd_build)
