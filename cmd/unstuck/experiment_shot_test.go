package main

import (
	"bytes"
	"cmp"
	"image"
	"image/color"
	"image/png"
	"slices"
	"testing"
)

// palettedPNG re-encodes a screenshot with the 256 colours it uses most:
// a report page is white, greys, text and a handful of chart colours, so
// this keeps it legible at a third of the size (docs/experiment.png stays
// well under 400 KB). Colours left out map to their nearest kept one.
func palettedPNG(raw []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	counts := map[color.RGBA]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	type used struct {
		c color.RGBA
		n int
	}
	var all []used
	for c, n := range counts {
		all = append(all, used{c, n})
	}
	slices.SortFunc(all, func(p, q used) int {
		if p.n != q.n {
			return cmp.Compare(q.n, p.n)
		}
		return cmp.Compare(rgbKey(p.c), rgbKey(q.c)) // deterministic
	})
	var pal color.Palette
	for _, u := range all[:min(256, len(all))] {
		pal = append(pal, u.c)
	}
	out := image.NewPaletted(b, pal)
	index := map[color.RGBA]uint8{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			i, ok := index[c]
			if !ok {
				i = uint8(pal.Index(c))
				index[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func rgbKey(c color.RGBA) uint32 {
	return uint32(c.R)<<24 | uint32(c.G)<<16 | uint32(c.B)<<8 | uint32(c.A)
}

// The screenshot keeps its size down and its pixels close: every pixel of
// a picture with a few colours survives exactly.
func TestPalettedPNGKeepsFewColoursExactly(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 64, 32))
	cols := []color.RGBA{{255, 255, 255, 255}, {0, 114, 178, 255}, {213, 94, 0, 255}, {27, 31, 36, 255}}
	for y := range 32 {
		for x := range 64 {
			img.Set(x, y, cols[(x/8+y/8)%len(cols)])
		}
	}
	var raw bytes.Buffer
	if err := png.Encode(&raw, img); err != nil {
		t.Fatal(err)
	}
	small, err := palettedPNG(raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	got, err := png.Decode(bytes.NewReader(small))
	if err != nil {
		t.Fatal(err)
	}
	for y := range 32 {
		for x := range 64 {
			if c := color.RGBAModel.Convert(got.At(x, y)); c != img.At(x, y) {
				t.Fatalf("pixel %d,%d = %v, want %v", x, y, c, img.At(x, y))
			}
		}
	}
}
