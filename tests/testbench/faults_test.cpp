// --fault specs and which LLM requests they strike.
#include "tapedeck/faults.hpp"

#include <gtest/gtest.h>

#include <csignal>

namespace tapedeck {
namespace {

TEST(FaultSpec, EveryTargetAndEffectParses) {
  Fault fault = parse_fault("llm#2=429");
  EXPECT_EQ(fault.target, Fault::Target::llm);
  EXPECT_EQ(fault.nth, 2u);
  EXPECT_EQ(fault.effect, Fault::Effect::http_status);
  EXPECT_EQ(fault.value, 429);
  EXPECT_EQ(fault.spec, "llm#2=429");

  fault = parse_fault("llm#*=cut@3");
  EXPECT_FALSE(fault.nth.has_value());
  EXPECT_EQ(fault.effect, Fault::Effect::cut);
  EXPECT_EQ(fault.value, 3);
  EXPECT_EQ(parse_fault("llm#1=slow@250").value, 250);
  EXPECT_EQ(parse_fault("llm#1=timeout").effect, Fault::Effect::timeout);
  EXPECT_EQ(parse_fault("llm#1=reset").effect, Fault::Effect::reset);

  fault = parse_fault("process:git#3=signal:TERM");
  EXPECT_EQ(fault.target, Fault::Target::process);
  EXPECT_EQ(fault.name, "git");
  EXPECT_EQ(fault.nth, 3u);
  EXPECT_EQ(fault.value, SIGTERM);
  EXPECT_EQ(parse_fault("process#1=exit:7").value, 7);

  fault = parse_fault("file:data/tasks.txt=eacces");
  EXPECT_EQ(fault.target, Fault::Target::file);
  EXPECT_EQ(fault.name, "data/tasks.txt");
  EXPECT_EQ(fault.effect, Fault::Effect::eacces);
}

TEST(FaultSpec, BadSpecsAreRefusedNamingThemAndWhatIsWrong) {
  const std::pair<const char*, const char*> refusals[] = {
      {"llm#1", "TARGET=EFFECT"},
      {"llm#0=429", "from 1"},
      {"llm#two=429", "from 1"},
      {"llm#1=200", "400 to 599"},
      {"llm#1=700", "400 to 599"},
      {"llm#1=cut@", "cut@"},
      {"llm#1=slow@0", "slow@"},
      {"llm#1=exit:3", "does not apply to an LLM call"},
      {"file:x=429", "does not apply to a file"},
      {"process#1=enoent", "does not apply to a subprocess"},
      {"process#1=signal:NOPE", "unknown signal"},
      {"process:#1=exit:1", "process:NAME#N"},
      {"model#1=429", "unknown target"},
      {"llm#1=explode", "unknown effect"},
  };
  for (const auto& [spec, why] : refusals) {
    try {
      parse_fault(spec);
      ADD_FAILURE() << "accepted " << spec;
    } catch (const FaultSpecError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find(std::string("'") + spec + "'"), std::string::npos) << message;
      EXPECT_NE(message.find(why), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
    }
  }
}

TEST(LlmFaultsTest, TheNthCallIsFaultedOnceAndItsRetryServed) {
  LlmFaults faults({parse_fault("llm#2=429")}, {"a", "b", "c"});
  EXPECT_FALSE(faults.take("a").has_value());
  EXPECT_TRUE(faults.take("b").has_value());   // the 2nd call's first request
  EXPECT_FALSE(faults.take("b").has_value());  // its retry
  EXPECT_FALSE(faults.take("c").has_value());
}

TEST(LlmFaultsTest, EqualRequestsAreToldApartByTheirTurn) {
  // The recording asked the same thing twice; llm#3 is the second of them.
  LlmFaults faults({parse_fault("llm#3=500")}, {"same", "other", "same"});
  EXPECT_FALSE(faults.take("same").has_value());  // the 1st call
  EXPECT_FALSE(faults.take("other").has_value());
  EXPECT_TRUE(faults.take("same").has_value());   // the 3rd: faulted
  EXPECT_FALSE(faults.take("same").has_value());  // its retry
}

TEST(LlmFaultsTest, EveryRequestIsFaultedWithAStar) {
  LlmFaults faults({parse_fault("llm#*=429")}, {"a"});
  for (int attempt = 0; attempt < 4; ++attempt) EXPECT_TRUE(faults.take("a").has_value());
  EXPECT_TRUE(faults.take("never recorded").has_value());
}

TEST(LlmFaultsTest, ACallTheRecordingDidNotMakeIsNeverFaulted) {
  LlmFaults faults({parse_fault("llm#5=429")}, {"a", "b"});
  EXPECT_FALSE(faults.take("a").has_value());
  EXPECT_FALSE(faults.take("b").has_value());
}

TEST(ProcessFaultsTest, TheNthSpawnAndTheNthOfANameAreCountedApart) {
  ProcessFaults faults({parse_fault("process#2=exit:3"), parse_fault("process:git#2=signal:KILL")});
  EXPECT_FALSE(faults.take("/usr/bin/git").has_value());  // spawn 1, git 1
  const auto second = faults.take("date");                // spawn 2
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->effect, Fault::Effect::exit);
  EXPECT_FALSE(faults.take("ls").has_value());
  const auto git = faults.take("git");  // git 2, by its name whatever its path
  ASSERT_TRUE(git.has_value());
  EXPECT_EQ(git->effect, Fault::Effect::signal);
  EXPECT_FALSE(faults.take("git").has_value());  // each strikes once
}

TEST(ProcessFaultsTest, OtherTargetsAreIgnored) {
  ProcessFaults faults({parse_fault("llm#1=429"), parse_fault("file:a=eio")});
  EXPECT_FALSE(faults.take("a").has_value());
}

TEST(FileFaultsTest, APathMatchesWithOrWithoutALeadingDot) {
  const std::vector<Fault> faults = {parse_fault("file:./data/tasks.txt=enoent"),
                                     parse_fault("process#1=exit:1")};
  EXPECT_TRUE(file_fault_for(faults, "data/tasks.txt").has_value());
  EXPECT_TRUE(file_fault_for(faults, "./data/tasks.txt").has_value());
  EXPECT_TRUE(file_fault_for(faults, "data/tasks.txt").has_value());  // every read
  EXPECT_FALSE(file_fault_for(faults, "tasks.txt").has_value());
  EXPECT_FALSE(file_fault_for(faults, "data/tasks.txt.bak").has_value());
}

}  // namespace
}  // namespace tapedeck
