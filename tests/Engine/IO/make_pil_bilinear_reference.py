# Regenerates the PIL reference bytes in ImageTests.cs (needs Pillow; not run by the tests).
# torchvision's Resize(size, BILINEAR) on a PIL image = PIL Image.resize((new_w, new_h), BILINEAR) with the shorter
# side = size and the longer = int(size * long / short); CenterCrop: top = int(round((h - th) / 2)), same for left.
import base64
from PIL import Image

def pattern(w, h):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 53 + y * 29) & 255, (x * y * 7) & 255, ((x ^ y) * 17) & 255) for y in range(h) for x in range(w)])
    return im

def resized(w, h, size):
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)

for (w, h, size) in [(37, 23, 16), (7, 5, 12), (20, 41, 9)]:
    nw, nh = resized(w, h, size)
    out = pattern(w, h).resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    crop = out.crop((left, top, left + size, top + size))
    print(f'[InlineData({w}, {h}, {size}, {nw}, {nh}, "{base64.b64encode(out.tobytes()).decode()}", {top}, {left})]')
    assert crop.tobytes() == b"".join(out.tobytes()[((top + r) * nw + left) * 3:((top + r) * nw + left + size) * 3] for r in range(size))
