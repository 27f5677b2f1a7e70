"""YAML as params.yaml needs it: safe, a key given twice is an error, and every YAML 1.2 float is a number.

The params schema reads its file through here, and so does the gate when it compares params with a
baseline's, so both see the same values that DVC (which reads YAML 1.2) shows.
"""

import re
from typing import IO, Any

import yaml

YAML_12_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
"""Floats with an exponent as YAML 1.2 writes them (``1e-05``, ``1E5``, ``.5e-3``): PyYAML follows YAML 1.1,
whose float needs a dot and a signed exponent, and reads these as strings. DVC (``dvc exp run -S``) and
people write them, so they resolve as floats here; the other YAML 1.1 forms already do."""


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping instead of keeping the last,
    and reads every YAML 1.2 float as a number.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML_12_EXPONENT_FLOAT, list("-+0123456789."))


def load_yaml(source: str | IO[str]) -> Any:
    """The YAML document in ``source`` (text or a stream); raise ``yaml.YAMLError`` when it is not valid."""
    return yaml.load(source, Loader=StrictLoader)
