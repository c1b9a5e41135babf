"""`meshstead image base|build`: a platform's cached base, and a node's flashable image."""

import time
from pathlib import Path

from .. import sites
from ..errors import MeshsteadError
from ..images import base as bases
from ..images import generic, openwrt, personalise, raspios, recipe
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


def _build_openwrt(args, opened, node) -> None:
    if args.raw:
        raise MeshsteadError("raw", "an OpenWrt node's image is made by its ImageBuilder; expected no --raw")
    outdir = Path(args.out)
    personalise.check_out_dir(outdir)
    imagebuilder = Path(args.imagebuilder) if args.imagebuilder else None
    with err.status(f"OpenWrt {node.name}: starting") as status:
        bundle = openwrt.build(opened, node.name, outdir, imagebuilder=imagebuilder,
                               progress=lambda msg: status.update(f"OpenWrt {node.name}: {msg}"))
    out.print(f"OpenWrt bundle for {node.name}: {bundle.path}")
    out.print(f"  holds {node.name}'s private keys (files/etc/uci-defaults, tinc's rsa_key.priv): written "
              "0700/0600; keep it like a key, and never publish an image built from it")
    out.print(f"  packages added to the ImageBuilder's defaults: {' '.join(bundle.packages)} "
              f"(also in {bundle.path / 'packages.txt'})")
    if not bundle.images:
        files = str((bundle.path / "files").resolve())
        out.print(f"  build it with the OpenWrt ImageBuilder for {bundle.target.target} (downloads.openwrt.org, "
                  "release 23.05 or later), unpacked in IMAGEBUILDER:")
        out.print(f"    {openwrt.make_command(bundle.target, bundle.packages, files, 'IMAGEBUILDER')}")
        out.print(f"  or: {bundle.path / 'build.sh'} IMAGEBUILDER")
        out.print(f"  or: meshstead image build {node.name} --site {opened.directory} --imagebuilder IMAGEBUILDER")
        return
    for image in bundle.images:
        out.print(f"Image for {node.name}: {image}")
        out.print(f"  size {_human(image.stat().st_size)}, sha256 {openwrt.sha256(image)}, written 0600")
    out.print("  flash a sysupgrade image from OpenWrt with: sysupgrade -n IMAGE (-n: the node's settings "
              "come from the image); a factory image through the vendor's firmware upload")


def _made_from(node) -> str:
    if openwrt.is_openwrt(node.platform):
        return "is made by the OpenWrt ImageBuilder (--imagebuilder DIR)"
    base = recipe.base_for_node(node.name, node.platform)
    return f"is made from meshstead's own {base} base (image base --platform {base})"


def _build_raspios(args, opened, node) -> None:
    if not args.base:
        raise MeshsteadError("base", f"node {node.name} is a Raspberry Pi 5 (platform {node.platform}), which "
                             "Debian 12 cannot boot; expected --base with a Raspberry Pi OS (bookworm, arm64, Lite) "
                             "image you downloaded (.img.xz or .img)")
    if args.imagebuilder:
        raise MeshsteadError("imagebuilder", f"node {node.name} has platform {node.platform}; expected an OpenWrt "
                             "node (openwrt:<target>/<profile>)")
    with err.status(f"Image {node.name}: starting") as status:
        built = raspios.build(Path(args.base), opened, node.name, Path(args.out), raw=args.raw,
                              progress=lambda msg: status.update(f"Image {node.name}: {msg}"))
    out.print(f"Image for {node.name}: {built.path}")
    out.print(f"  Raspberry Pi OS from {args.base}, with {node.name}'s seed and the packages it lacks; "
              f"made in {built.seconds:.1f} s")
    out.print(f"  size {_human(built.size)}, sha256 {built.sha256} (also in {built.path.name}.sha256)")
    out.print(f"  holds {node.name}'s private keys: written 0600; keep it like a key, the node scrubs them "
              "from the card at first boot")
    out.print(f"  write it to a card: {_write_hint(built.path)}")
    out.print("  or with Raspberry Pi Imager: Choose OS > Use custom > this file, and answer No to OS "
              "customisation (it would replace the image's firstrun.sh)")
    out.print("  first power-on: Raspberry Pi OS's own first boot, then meshstead's install (offline), then "
              "the node configures itself; each step reboots once")


def cmd_build(args) -> None:
    if args.generic and args.base:
        raise MeshsteadError("base", "a generic image is made from meshstead's own base; expected --base only "
                             "with a node of platform rpi5")
    if args.generic and args.imagebuilder:
        raise MeshsteadError("imagebuilder", "a generic image has no OpenWrt bundle; expected --imagebuilder "
                             "only with an OpenWrt node")
    if args.generic:
        return cmd_build_generic(args)
    if args.node is None:
        raise MeshsteadError("node", "no node given; expected `image build NODE` or `image build --generic "
                             "--platform P`")
    if args.invite or args.platform:
        raise MeshsteadError("generic", "--invite and --platform are for a generic image; expected --generic "
                             "with them (a node's image takes its platform from the site)")
    opened = sites.open_site(site_dir(args), args.vault_password_file)
    node = sites.get_node(opened.site, args.node)
    if args.base and node.platform not in recipe.RASPIOS_PLATFORMS:
        raise MeshsteadError("base", f"node {node.name} has platform {node.platform}, whose image "
                             f"{_made_from(node)}; expected --base only for a node of platform "
                             f"{', '.join(sorted(recipe.RASPIOS_PLATFORMS))}")
    if node.platform in recipe.RASPIOS_PLATFORMS:
        _build_raspios(args, opened, node)
        return
    if openwrt.is_openwrt(node.platform):
        _build_openwrt(args, opened, node)
        return
    if args.imagebuilder:
        raise MeshsteadError("imagebuilder", f"node {node.name} has platform {node.platform}; expected an "
                             "OpenWrt node (openwrt:<target>/<profile>)")
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


def cmd_build_generic(args) -> None:
    if args.node is not None:
        raise MeshsteadError("generic", f"a generic image has no node ({args.node!r} given); expected "
                             "`image build --generic --platform P` (the invite names the node)")
    if not args.platform:
        raise MeshsteadError("platform", f"a generic image needs --platform; expected one of "
                             f"{', '.join(recipe.platforms())}")
    from ..load import load_site
    directory = site_dir(args)
    site = load_site(directory)  # public files only: a generic image holds no secret of the site
    text = None
    if args.invite:
        try:
            text = Path(args.invite).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MeshsteadError("invite", f"cannot read {args.invite}: {exc}; expected the invite's .txt") from None
        granted = generic.invite_grant(site, text)
        if recipe.base_for_node(granted.name, granted.platform) != args.platform:
            raise MeshsteadError("platform", f"invite {granted.id} is for a {granted.platform} node, not the "
                                 f"{args.platform} base")
        name = personalise.image_name(granted.name, args.platform, args.raw)
    else:
        name = personalise.image_name(f"{site.settings.name}-generic", args.platform, args.raw)
    outdir = Path(args.out)
    personalise.check_out_dir(outdir)
    base = ensure_base(args.platform)
    label = "generic image"
    with err.status(f"Image ({label}): starting") as status:
        built = personalise.write(base, generic.files(site, text, args.platform), name, outdir, raw=args.raw,
                                  private=text is not None,
                                  progress=lambda msg: status.update(f"Image ({label}): {msg}"))
    out.print(f"Generic image of site {site.settings.name}: {built.path}")
    out.print(f"  size {_human(built.size)}, sha256 {built.sha256} (also in {built.path.name}.sha256), "
              f"made in {built.seconds:.1f} s")
    if text is not None:
        out.print(f"  holds the invite for {granted.name}: written 0600; whoever has it can join as "
                  f"{granted.name} until the invite is used or expires")
    else:
        out.print("  no node and no secret in it: put an invite on its boot partition as meshstead/invite.txt "
                  "(docs/invites.md)")
    out.print(f"  write it to a card: {_write_hint(built.path)}")
    if args.platform == "amd64":
        invite_hint = "" if text is not None else " --invite INVITE.txt"
        out.print(f"  try it in the lab: meshstead lab boot {built.path}{invite_hint} --site {directory}")


def register(sub, site_option) -> None:
    image = sub.add_parser("image", help="flashable images: a platform's base, a node's image"
                           ).add_subparsers(dest="image_command", required=True)
    base = image.add_parser("base", help="build or reuse the cached base image of a platform")
    base.add_argument("--platform", required=True, help="which base: " + ", ".join(recipe.platforms())
                      + f"; a node platform ({', '.join(sorted(recipe.PLATFORM_BASES))}) names its base")
    base.add_argument("--rebuild", action="store_true", help="build it again even if it is cached")
    base.set_defaults(func=cmd_base)
    build = image.add_parser("build", parents=[site_option], help="a node's flashable image: its platform's "
                             "base plus the node's seed (identity and settings), configured at first boot; "
                             "for an OpenWrt node, an ImageBuilder bundle")
    build.add_argument("node", nargs="?", help="the node (its platform chooses the base)")
    build.add_argument("--generic", action="store_true",
                       help="no node: an image that joins the site by invite at first boot")
    build.add_argument("--platform", choices=recipe.platforms(), help="the base of a generic image")
    build.add_argument("--invite", metavar="FILE",
                       help="put this invite (its .txt) on a generic image's boot partition")
    build.add_argument("--out", default="images", help="directory for the image (default: images)")
    build.add_argument("--raw", action="store_true", help="write NODE-PLATFORM.img instead of a zstd-compressed "
                       ".img.zst")
    build.add_argument("--base", metavar="IMAGE", help="rpi5 nodes: the Raspberry Pi OS (bookworm, arm64, Lite) "
                       "image to personalise, as downloaded (.img.xz or .img)")
    build.add_argument("--imagebuilder", metavar="DIR", help="OpenWrt nodes: run this unpacked OpenWrt "
                       "ImageBuilder on the node's bundle (without it, the bundle and the make command)")
    add_vault_option(build)
    build.set_defaults(func=cmd_build)
