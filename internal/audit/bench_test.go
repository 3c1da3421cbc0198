package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
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

// BenchmarkRecordCPU reports the CPU (user and system, from getrusage) that
// one line costs the process under group commit, for several numbers of
// concurrent writers and commit spacings: per-batch costs (the checkpoint
// signature, the durable write) shrink per line as batches grow.
func BenchmarkRecordCPU(b *testing.B) {
	for _, writers := range []int{8, 32} {
		for _, spacing := range []time.Duration{0, 500 * time.Microsecond} {
			b.Run(fmt.Sprintf("writers=%d/spacing=%s", writers*runtime.GOMAXPROCS(0), spacing), func(b *testing.B) {
				l := benchLog(b)
				l.opts.FlushInterval = spacing
				e := sampleEntry(1)
				b.SetParallelism(writers)
				before := l.Stats()
				u0, s0 := rusage(b)
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
				u1, s1 := rusage(b)
				st := l.Stats()
				b.ReportMetric(float64(u1-u0)/float64(b.N), "user-ns/line")
				b.ReportMetric(float64(s1-s0)/float64(b.N), "sys-ns/line")
				b.ReportMetric(float64(st.Lines-before.Lines)/float64(max(st.Batches-before.Batches, 1)), "lines/batch")
			})
		}
	}
}

func rusage(b *testing.B) (user, sys int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano(), ru.Stime.Nano()
}
