"""What the provenance stage costs per file: plain JPEGs (1 and 12 megapixels), the same signed with C2PA
content credentials (a throwaway test chain, deepfake_service/samples/provenancegen.py), a signed PNG, XMP and PNG generator
metadata. Median milliseconds of ``ProvenanceReader.read``, with and without a trust list. Prints figures and
writes results/provenance/provenance.csv; it asserts nothing.

  python -m loadtest.provenance_bench      (make bench-provenance)
"""

from __future__ import annotations

from PIL import Image

from deepfake_service.samples import imagegen, provenancegen
from handler.provenance import ProvenanceReader, ProvenanceSettings
from loadtest.harness import announce_cpu, bench_parser, median_ms, write_csv


def photo(width: int, height: int) -> bytes:
    from skimage import data as photos

    return imagegen.encode(Image.fromarray(photos.astronaut()).resize((width, height), Image.Resampling.BICUBIC), "JPEG", quality=90)


def photo_png(width: int, height: int) -> bytes:
    from skimage import data as photos

    return imagegen.encode(Image.fromarray(photos.astronaut()).resize((width, height), Image.Resampling.BICUBIC), "PNG")


def files() -> dict[str, bytes]:
    small, large = photo(1152, 864), photo(4000, 3000)
    return {
        "plain JPEG 1 MP": small,
        "plain JPEG 12 MP": large,
        "signed JPEG 1 MP": provenancegen.signed(small, "image/jpeg"),
        "signed JPEG 12 MP": provenancegen.signed(large, "image/jpeg"),
        "signed PNG 0.3 MP": provenancegen.signed(photo_png(640, 480), "image/png"),
        "XMP JPEG": provenancegen.xmp_jpeg(),
        "PNG parameters chunk": provenancegen.parameters_png(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "provenance", 50, "file", served=False)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    announce_cpu()
    readers = {"no trust list": ProvenanceReader(ProvenanceSettings(True)),
               "trust list": ProvenanceReader(ProvenanceSettings(True, provenancegen.chain().root_pem))}
    rows = []
    for name, payload in files().items():
        row = {"file": name, "bytes": len(payload)}
        for label, reader in readers.items():
            reader.read(payload)  # the C2PA context is built once per worker
            ms, block = median_ms(lambda: reader.read(payload), args.repeats)
            row[f"ms_{label.replace(' ', '_')}"] = round(ms, 3)
            row["declared_ai"] = block["declared_ai"]
        rows.append(row)
        print(f"  {name:22s} {len(payload) / 1e6:6.2f} MB  {row['ms_no_trust_list']:7.2f} ms  "
              f"(with a trust list {row['ms_trust_list']:7.2f} ms)  declared_ai {row['declared_ai']}", flush=True)
    write_csv(rows, args.output / "provenance.csv")
    print(f"wrote {args.output}/provenance.csv")


if __name__ == "__main__":
    main()
