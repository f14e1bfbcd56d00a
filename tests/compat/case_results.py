# Runs one unittest module and prints, on stdout once it is done, each case's id and outcome
# (ok, FAIL, ERROR, skipped, expected failure, unexpected success), then the totals: what a
# replay must print again. What the cases log goes to stderr, apart (asyncio's debug mode says
# when a callback ran long, by the clock of the moment). Usage: case_results.py MODULE
import sys
import unittest


class Outcomes(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcomes = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes.append((test.id(), "ok"))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.outcomes.append((test.id(), "FAIL"))

    def addError(self, test, err):
        super().addError(test, err)
        self.outcomes.append((str(test), "ERROR"))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes.append((test.id(), "skipped"))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcomes.append((test.id(), "expected failure"))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.outcomes.append((test.id(), "unexpected success"))


result = Outcomes()
unittest.defaultTestLoader.loadTestsFromName(sys.argv[1]).run(result)
for case, outcome in result.outcomes:
    print(case, outcome)
print(f"{len(result.outcomes)} cases, {len(result.failures)} failed, {len(result.errors)} errors")
sys.exit(0 if result.wasSuccessful() else 1)
