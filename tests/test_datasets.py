"""Brand names from different logo collections meet on one key (the quality bench's matching)."""

from lookalike.dev.datasets import brand_key, drawing_colour, render_svg


def test_brand_key_matches_collections_naming_styles():
    assert brand_key("adobe-photoshop") == brand_key("Adobe Photoshop") == "adobephotoshop"
    assert brand_key("500px") == "500px" and brand_key("dot-net") == "dotnet"
    assert brand_key("c-plusplus") != brand_key("c")


def test_render_svg_colours_only_drawings_without_a_fill_of_their_own():
    square = '<rect x="0" y="0" width="24" height="24"/></svg>'
    plain = render_svg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">' + square, 64, "FF0000")
    own = render_svg('<svg xmlns="http://www.w3.org/2000/svg" fill="#0000FF" viewBox="0 0 24 24">' + square, 64,
                     "FF0000")
    assert plain.getpixel((32, 32)) == (255, 0, 0)   # simple-icons style: the brand colour is applied
    assert own.getpixel((32, 32)) == (0, 0, 255)     # devicon 'plain' style: its own fill is kept
    assert plain.getpixel((2, 2)) == (255, 255, 255)  # centred on white with a margin


def test_near_white_brand_colours_are_drawn_black():
    assert drawing_colour("FFFFFF") == drawing_colour("E8E8E8") == "000000"   # Sony, Apache Cordova
    assert drawing_colour("FFFF66") == "FFFF66" and drawing_colour("3776AB") == "3776AB"  # yellow stays
    assert drawing_colour(None) is None
