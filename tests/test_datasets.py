"""Brand names from different logo collections meet on one key (the quality bench's matching)."""

from lookalike.datasets import brand_key


def test_brand_key_matches_collections_naming_styles():
    assert brand_key("adobe-photoshop") == brand_key("Adobe Photoshop") == "adobephotoshop"
    assert brand_key("500px") == "500px" and brand_key("dot-net") == "dotnet"
    assert brand_key("c-plusplus") != brand_key("c")
