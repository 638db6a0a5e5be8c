#!/usr/bin/env python3
"""A folder of images packed small for a GPU window's 64 MiB, and unpacked there.

    python3 tools/images-pack.py pack FOLDER... OUT.xz   (FOLDERs below the current folder)
    python3 tools/images-pack.py unpack IN.xz DEST       (the same paths, under DEST)

xz finds little to share between separately deflated PNGs: the 3,786 Noto emoji (64x64 RGBA)
are 13.5 MB as an xz'd tar of their files and 6.7 MB as their pixels xz'd together. So `pack`
stores the 8-bit RGBA PNGs as raw pixels and any other image the CLI reads (grey, palette or
16-bit PNG, JPEG, GIF, WebP, TIFF, BMP: by extension, as `ddpm train` picks them) as its own
bytes; other files are left out and counted. `unpack` writes them under DEST at the paths they
had below the folder `pack` ran in, so that a run's `data.source` finds them; every image
decodes to the pixels it had.
Needs Pillow (on the GPU machines; `pip install pillow` elsewhere).
"""

import io
import json
import lzma
import os
import sys
import tarfile

from PIL import Image

# The extensions `ddpm train` reads from a folder (any case).
IMAGE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jfif", ".gif", ".webp", ".tif", ".tiff", ".bmp")


def raw_rgba(path):
    """The image's pixels if it is an 8-bit RGBA PNG, else None (kept as a file)."""
    with open(path, "rb") as f:
        head = f.read(26)
    # The IHDR chunk: bit depth 8, colour type 6 (RGBA), read from the file itself because
    # Pillow also opens 16-bit RGBA as "RGBA", rounding its own way.
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[24:26] != bytes([8, 6]):
        return None
    with Image.open(path) as im:
        return im.size, im.tobytes()


def pack(folders, out):
    index, pixels, files, skipped = [], bytearray(), {}, []
    for folder in folders:
        if os.path.relpath(folder).split(os.sep)[0] == "..":
            sys.exit(f"images-pack: {folder} is not below the current folder")
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(root, name)
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    skipped.append(path)
                    continue
                rel = os.path.relpath(path)
                found = raw_rgba(path)
                if found is None:
                    with open(path, "rb") as f:
                        files[rel] = f.read()
                    index.append({"path": rel})
                else:
                    (w, h), data = found
                    index.append({"path": rel, "size": [w, h], "at": len(pixels)})
                    pixels += data
    if skipped:
        print(
            f"images-pack: left out {len(skipped)} file(s) that are not images (first: {skipped[0]})",
            file=sys.stderr,
        )
    if not index:
        sys.exit(f"images-pack: no images in {' '.join(folders)}")
    members = {"index.json": json.dumps(index).encode(), "pixels.rgba": bytes(pixels)}
    members.update({f"files/{rel}": data for rel, data in files.items()})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(out, "wb") as f:
        f.write(lzma.compress(buffer.getvalue(), preset=6))
    print(f"{out}: {len(index)} images ({len(files)} kept as files), {os.path.getsize(out)} bytes")


def unpack(packed, dest):
    with lzma.open(packed) as f, tarfile.open(fileobj=io.BytesIO(f.read())) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        pixels = tar.extractfile("pixels.rgba").read()
        for entry in index:
            rel = entry["path"]
            if os.path.isabs(rel) or ".." in rel.split(os.sep):
                sys.exit(f"images-pack: {packed}: unsafe path {rel!r}")
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if "size" in entry:
                w, h = entry["size"]
                data = pixels[entry["at"] : entry["at"] + w * h * 4]
                Image.frombytes("RGBA", (w, h), data).save(path)
            else:
                with open(path, "wb") as f:
                    f.write(tar.extractfile(f"files/{rel}").read())
    print(f"{dest}: {len(index)} images")


if __name__ == "__main__":
    try:
        if len(sys.argv) >= 4 and sys.argv[1] == "pack":
            pack(sys.argv[2:-1], sys.argv[-1])
        elif len(sys.argv) == 4 and sys.argv[1] == "unpack":
            try:
                unpack(sys.argv[2], sys.argv[3])
            except (lzma.LZMAError, tarfile.TarError, KeyError, ValueError) as e:
                sys.exit(f"images-pack: {sys.argv[2]}: not a pack of images-pack.py ({e})")
        else:
            sys.exit("usage: images-pack.py pack FOLDER... OUT.xz | images-pack.py unpack IN.xz DEST")
    # A bad image or pack file is one line naming it (Pillow's and lzma's messages do), not a
    # traceback.
    except (OSError, ValueError, KeyError, lzma.LZMAError, tarfile.TarError) as e:
        sys.exit(f"images-pack: {e}")
