# Reference numbers for Testing/stats/test_stats.py: DeLong AUC variance, interval and paired
# test from R's pROC (Debian package r-cran-proc, 1.18.0), on the real HCC cohort in
# asaur_hepatoCellular.csv (scores are raw clinical columns, so ties are heavy).
# Run once from this folder:  Rscript delong_pROC.R > delong_pROC.csv
suppressMessages(library(pROC))
d <- read.csv("asaur_hepatoCellular.csv")
comparisons <- list(
  c("Recurrence", "Age", "AFP"),
  c("Recurrence", "TNM", "BCLC"),
  c("Death", "Tumorsize", "Vascularinvasion"),
  c("Death", "CD8T", "CD4T"),
  c("Recurrence", "Ki67", "CD34")
)
cat("outcome,score_a,score_b,n,n_pos,auc_a,var_a,low_a,high_a,auc_b,var_b,low_b,high_b,z,p\n")
for (cmp in comparisons) {
  keep <- complete.cases(d[, cmp])
  y <- d[keep, cmp[1]]
  # direction "<": controls score lower, so an AUC below 0.5 is kept, not flipped.
  ra <- roc(y, d[keep, cmp[2]], levels = c(0, 1), direction = "<", quiet = TRUE)
  rb <- roc(y, d[keep, cmp[3]], levels = c(0, 1), direction = "<", quiet = TRUE)
  ca <- ci.auc(ra, method = "delong", conf.level = 0.95)
  cb <- ci.auc(rb, method = "delong", conf.level = 0.95)
  t <- roc.test(ra, rb, method = "delong", paired = TRUE)
  vals <- c(sum(keep), sum(y == 1),
            as.numeric(auc(ra)), var(ra, method = "delong"), ca[1], ca[3],
            as.numeric(auc(rb)), var(rb, method = "delong"), cb[1], cb[3],
            t$statistic, t$p.value)
  cat(paste(c(cmp, trimws(formatC(vals, digits = 15, format = "g"))), collapse = ","), "\n", sep = "")
}
