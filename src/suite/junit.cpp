// A suite's results as JUnit XML, the report format CI systems read (Jenkins, GitLab, GitHub
// test reporters): written with pugixml, which escapes; what XML 1.0 cannot hold at all
// (control characters, bytes that are not UTF-8, in a program's output) is replaced first.
#include <fmt/core.h>

#include <pugixml.hpp>
#include <sstream>

#include "tapedeck/suite.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::suite {

namespace {

// Text XML 1.0 allows: valid UTF-8 without C0 controls other than tab, newline and return, and
// without U+FFFE/U+FFFF. Anything else becomes U+FFFD, so a report is never unparseable. Each
// sequence is judged by the tape's own UTF-8 check (is_valid_utf8).
std::string xml_safe(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      const bool allowed = byte >= 0x20 || byte == '\t' || byte == '\n' || byte == '\r';
      if (allowed) {
        out += static_cast<char>(byte);
      } else {
        out += kReplacement;
      }
      ++i;
      continue;
    }
    // The sequence's length as its lead byte says; whether it is one, the UTF-8 check says.
    const size_t length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2;
    const std::string_view sequence = text.substr(i, length);
    if (sequence.size() == length && is_valid_utf8(sequence) && sequence != "\xEF\xBF\xBE" &&
        sequence != "\xEF\xBF\xBF") {
      out.append(sequence);
      i += length;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

std::string seconds(double value) {
  return fmt::format("{:.3f}", value);
}

}  // namespace

std::string junit_xml(const std::vector<CaseResult>& results, const std::string& suite_name,
                      double total_seconds) {
  size_t failures = 0;
  size_t errors = 0;
  for (const CaseResult& result : results) {
    switch (result.status) {
      case CaseResult::Status::passed:
        break;
      case CaseResult::Status::diverged:
      case CaseResult::Status::stopped:
      case CaseResult::Status::untested:
        ++failures;
        break;
      case CaseResult::Status::timed_out:
      case CaseResult::Status::error:
        ++errors;
        break;
    }
  }
  pugi::xml_document document;
  pugi::xml_node declaration = document.append_child(pugi::node_declaration);
  declaration.append_attribute("version") = "1.0";
  declaration.append_attribute("encoding") = "UTF-8";
  pugi::xml_node suites = document.append_child("testsuites");
  suites.append_attribute("name") = xml_safe(suite_name).c_str();
  suites.append_attribute("tests") = results.size();
  suites.append_attribute("failures") = failures;
  suites.append_attribute("errors") = errors;
  suites.append_attribute("time") = seconds(total_seconds).c_str();
  pugi::xml_node suite = suites.append_child("testsuite");
  suite.append_attribute("name") = xml_safe(suite_name).c_str();
  suite.append_attribute("tests") = results.size();
  suite.append_attribute("failures") = failures;
  suite.append_attribute("errors") = errors;
  suite.append_attribute("skipped") = 0;
  suite.append_attribute("time") = seconds(total_seconds).c_str();

  for (const CaseResult& result : results) {
    pugi::xml_node testcase = suite.append_child("testcase");
    const std::string folder = result.tape.parent_path().string();
    testcase.append_attribute("classname") = xml_safe(folder.empty() ? "." : folder).c_str();
    testcase.append_attribute("name") = xml_safe(result.tape.filename().string()).c_str();
    testcase.append_attribute("file") = xml_safe(result.tape.string()).c_str();
    testcase.append_attribute("time") = seconds(result.seconds).c_str();
    if (result.passed()) continue;
    const bool failure = result.status == CaseResult::Status::diverged ||
                         result.status == CaseResult::Status::stopped ||
                         result.status == CaseResult::Status::untested;
    pugi::xml_node problem = testcase.append_child(failure ? "failure" : "error");
    problem.append_attribute("message") = xml_safe(result.message).c_str();
    problem.append_attribute("type") = std::string(to_string(result.status)).c_str();
    std::string body = result.message;
    if (!result.mode.empty()) body += fmt::format("\nfidelity mode: {}", result.mode);
    if (!result.replay_tape.empty()) body += "\nreplay tape: " + result.replay_tape.string();
    problem.text().set(xml_safe(body).c_str());
    if (!result.replay_stdout.empty()) {
      testcase.append_child("system-out").text().set(xml_safe(result.replay_stdout).c_str());
    }
    if (!result.replay_stderr.empty()) {
      testcase.append_child("system-err").text().set(xml_safe(result.replay_stderr).c_str());
    }
  }
  std::ostringstream out;
  document.save(out, "  ", pugi::format_default, pugi::encoding_utf8);
  return out.str();
}

}  // namespace tapedeck::suite
