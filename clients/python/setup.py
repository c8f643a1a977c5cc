"""Builds the package with the service's messages and stubs generated from
`proto/parcelrisk/v1/*.proto` (the repository's, two levels up, or the
directory named by PARCEL_RISK_PROTO), as the top-level package
`parcelrisk.v1`, where the generated modules import each other."""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def proto_root() -> Path:
    here = Path(__file__).resolve().parent
    root = Path(os.environ.get("PARCEL_RISK_PROTO", here.parent.parent / "proto"))
    if not (root / "parcelrisk" / "v1").is_dir():
        raise SystemExit(f"no parcelrisk/v1 proto files under {root}; set PARCEL_RISK_PROTO")
    return root


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        from grpc_tools import protoc  # a build requirement (pyproject.toml)

        root = proto_root()
        out = Path(self.build_lib)
        protos = sorted(str(p) for p in (root / "parcelrisk" / "v1").glob("*.proto"))
        # grpc_tools ships google/protobuf/*.proto next to its module.
        include = Path(protoc.__file__).resolve().parent / "_proto"
        args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed on " + " ".join(protos))
        for package in (out / "parcelrisk", out / "parcelrisk" / "v1"):
            (package / "__init__.py").touch()


setup(cmdclass={"build_py": BuildWithStubs})
