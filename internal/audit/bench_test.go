package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func benchLog(b *testing.B) *Log {
	b.Helper()
	l, err := New([]Sink{openFile(b, filepath.Join(b.TempDir(), "audit.log"), 0)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	hk, priv, _ := testKeys()
	l.SetKeys(hk, priv, "k1")
	b.Cleanup(func() { l.Close() })
	return l
}

func reportThroughput(b *testing.B, l *Log, start time.Time, before Stats) {
	elapsed := time.Since(start)
	s := l.Stats()
	batches := s.Batches - before.Batches
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "lines/s")
	if batches > 0 {
		b.ReportMetric(float64(b.N)/float64(batches), "lines/batch")
	}
}

// BenchmarkRecordParallel measures group commit with a real fsynced file:
// many concurrent requests share each write+fsync.
func BenchmarkRecordParallel(b *testing.B) {
	l := benchLog(b)
	e := sampleEntry(1)
	e.Hashed = map[string]string{"message": l.HMAC("hello")}
	b.SetParallelism(64) // a busy server has many requests in flight per core
	before, start := l.Stats(), time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Record(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportThroughput(b, l, start, before)
}

// BenchmarkRecordSerial is one request at a time: one fsync per line.
func BenchmarkRecordSerial(b *testing.B) {
	l := benchLog(b)
	e := sampleEntry(1)
	before, start := l.Stats(), time.Now()
	b.ResetTimer()
	for b.Loop() {
		if err := l.Record(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportThroughput(b, l, start, before)
}
