from PIL import Image

from arcsub.render import ARC_COLORS, render_task
from arcsub.tasks import Pair, Task


def test_render_draws_grids_in_arc_colours_and_marks_attempts(tmp_path):
    task = Task("demo", (Pair(((1, 2), (3, 4)), ((4,),)),), (Pair(((5, 6),), ((7, 8, 9),)),))
    path = render_task(task, tmp_path / "t.png", [(((7, 8, 9),), ((0,),))])
    image = Image.open(path).convert("RGB")
    colours = {image.getpixel((x, y)) for x in range(image.width) for y in range(image.height)}
    for c in range(10):
        assert ARC_COLORS[c] in colours, c
    assert (46, 160, 67) in colours and (207, 34, 46) in colours  # solved and wrong frames
    plain = Image.open(render_task(task, tmp_path / "p.png")).convert("RGB")
    assert plain.width < image.width  # no attempt columns
