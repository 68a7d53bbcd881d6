package main

import (
	"os"
	"testing"
)

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", []float64{3}, summary{3, 3, 3, 3, 3, 1}},
		{"odd", []float64{5, 1, 3}, summary{3, 1, 5, 1, 3, 3}},
		{"even: mean of the middle two", []float64{4, 1, 10, 2}, summary{3, 1, 10, 1, 4, 4}},
		{"outlier does not move the median", []float64{1, 2, 3, 4, 1000}, summary{3, 1, 1000, 2, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := summarize(tc.in); got != tc.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("summarize reordered its input: %v", tc.in)
				}
			}
		})
	}
}

func TestPartition1(t *testing.T) {
	dir := t.TempDir()
	img := dir + "/mbr.raw"
	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xaa
	e := mbr[446:]
	e[4] = 0x83
	e[8], e[9] = 0x00, 0x08   // start 2048
	e[12], e[13] = 0x00, 0x10 // 4096 sectors
	if err := writeFile(img, mbr); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 8<<20) // the partition lies within the image
	off, size, err := partition1(img)
	if err != nil || off != 2048*512 || size != 4096*512 {
		t.Fatalf("partition1 = %d, %d, %v; want %d, %d", off, size, err, 2048*512, 4096*512)
	}
	mbr[510] = 0
	writeFile(img, mbr)
	if _, _, err := partition1(img); err == nil {
		t.Fatal("partition1 accepted an image without an MBR signature")
	}
}
